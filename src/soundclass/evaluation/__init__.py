"""Judging predictions: metrics, calibration, the run folder and its HTML report.

Stage 9 (imports everything up to inference).  ``metrics`` (plain numpy),
``calibration`` (temperature scaling, ECE, reliability, the "unknown"
threshold), ``evaluate`` (a run or checkpoint on labelled clips -> metrics.json,
CSVs, pictures), ``report`` (the self-contained ``report.html``).
"""
