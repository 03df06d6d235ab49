"""Signal processing: pure functions on arrays, equal to librosa within stated tolerances.

Stage 3 (imports errors, config, util, audio).  ``filters`` (mel scale and
filterbank), ``stft`` (blocked STFT), ``features`` (spectrograms, mel, dB, MFCC,
deltas), ``stats`` (per-clip statistics of the classical models), ``aisfx``
(the aiSFX network's log-mel recipe and blocks), ``frontend`` (the same
features as torch ``nn.Module``s for ONNX export), ``augment``
(training-time transforms with explicit generators).  Data first, every other
argument keyword-only, librosa's names (``sr``, ``n_fft``, ``hop_length``...).
"""
