"""The paper's baselines, one file each, registered in :mod:`diffmd.registry`.

``tfn`` (Thomas et al. 2018), ``rf`` (Radial Field, Köhler et al. 2019, velocity variant),
``se3_transformer`` (Fuchs et al. 2020), ``gmn`` (Huang et al. 2022), ``scfnn`` (Gao and Remsing 2022).
Importing this package imports none of them: the registry loads each module by name.
"""
