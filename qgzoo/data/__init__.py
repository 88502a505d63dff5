"""Reference data: the ensemble's spec and its coarsened samples (``reference``), and the
zarr stores that hold them (``store``)."""
