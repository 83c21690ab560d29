"""Built-in text modality (rendered characters) and its data sets."""
