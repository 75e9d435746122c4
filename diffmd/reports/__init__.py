"""Reports: ARMSE tables, the paper side by side, validity, figures and costs (see __main__)."""
