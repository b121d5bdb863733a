"""A completed CVAT job to a promoted model: the run, the labelled set, fine-tuning, promotion, the run queue, correction effort."""
