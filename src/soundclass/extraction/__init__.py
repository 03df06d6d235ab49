"""From audio files to cached features, in parallel, never stopped by one bad file.

Stage 7 (imports everything up to models: a pretrained network can be a
feature extractor).  ``extract`` (``compute_feature`` / ``extract_file`` /
``extract_many``), ``cache`` (content-addressed, checksummed, resumable
feature cache; ``get_features``), ``entry`` (the checksummed file format of
one cache entry), ``stored`` (``StoredFeatures``: cached features read one
at a time, for training without holding the dataset), ``embed``
(``soundclass embed``: aiSFX clip embeddings for other tools).
"""
