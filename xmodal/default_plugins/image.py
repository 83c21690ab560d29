"""Built-in image modality and its data sets."""
