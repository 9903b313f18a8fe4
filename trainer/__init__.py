"""Training loops for napari-wsss (classifier, AffinityNet, segmenter); never imports Qt."""
