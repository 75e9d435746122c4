"""Models of the benchmark. Each registers itself with :func:`diffmd.registry.register_model`;
:data:`diffmd.registry.MODEL_MODULES` maps a name to its module so nothing here imports them eagerly.
"""
