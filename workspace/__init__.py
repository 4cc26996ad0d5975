"""The researchers' workspace: accounts, the study list, creating and running studies, the
dashboard, downloads, and the researcher API behind them. The top layer beside
``frontend`` (the annotator page): it may read every app below it."""
