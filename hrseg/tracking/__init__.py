"""What is recorded about runs: MLflow run logging (``tracker``), the runs table (``runs``),
the MLflow UI launcher (``ui``) and the README results table (``results_table``).

This floor sits above ``engine`` and ``evaluation``: the CLI and the stages create a tracker
and hand it to the library, which never imports this package."""
