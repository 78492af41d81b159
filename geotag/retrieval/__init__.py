"""Retrieval refinement: locate a photo within its predicted cells by its nearest training images.

Each training fold keeps a :class:`~geotag.retrieval.index.LocationIndex` of its training
images' L2-normalised embeddings (the model's pooled features) with their true locations and
cells (``fold-<k>/index.safetensors`` + ``index.parquet``). At prediction time
:func:`~geotag.retrieval.refine.locate` searches the entries of the top-k predicted cells
(``refined``) or the whole index (``knn``) with :class:`~geotag.retrieval.search.ExactSearch`
and answers the similarity-weighted medoid of the ``m`` nearest entries;
:func:`~geotag.retrieval.refine.choose_settings` picks k, m and the temperature on the inner
validation split.

    index.py       LocationIndex: build (normalise, optionally fuse a group), save, load
    search.py      ExactSearch: blocked exact cosine search, optionally restricted to cells
    refine.py      weighted_medoid, locate, choose_settings
    predictors.py  the knn and refined predictors as train, eval and predict use them
"""
