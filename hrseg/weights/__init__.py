"""Released weights: the catalogue of known files (``catalogue``: URL, sha256, how each was
trained) and the resumable, checksummed downloader (``download``)."""
