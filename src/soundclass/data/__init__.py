"""Datasets before any feature: listing clips, scanning them, grouping and splitting.

Stage 5 (imports errors, config, util, audio, dsp, plots).  ``dataset`` (folder
trees and manifests; every file name, hidden or not UTF-8, is listed),
``scan`` / ``scan_report`` / ``scan_writers`` (``soundclass scan``),
``splits`` (stratified, grouped holdout and k-fold, leakage warnings),
``duplicates`` and ``fingerprint`` (exact and near-duplicate clips tied into
one group), ``synth`` (the built-in demo dataset).
"""
