"""The hooks a qgzoo plugin implements.

A plugin is a module (or object) with functions marked ``@qgzoo.hookimpl``,
advertised in the ``qgzoo`` entry-point group of its distribution::

    [project.entry-points.qgzoo]
    myplugin = "myplugin"
"""

import pluggy

hookspec = pluggy.HookspecMarker("qgzoo")
hookimpl = pluggy.HookimplMarker("qgzoo")


@hookspec
def register_components(register):
    """Register component spec classes.

    Call ``register(SpecClass)`` once per component. ``SpecClass`` subclasses
    one of ``CoarsenerSpec``, ``NetworkSpec``, ``LossSpec`` or ``StepperSpec``
    and declares a unique ``kind: Literal["name"] = "name"``.
    """
