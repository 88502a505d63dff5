"""Low-resolution runs of a parameterized model: the differentiable, checkpointed rollout
that training goes through (``rollout``) and the long online runs that comparisons
score (``online``)."""
