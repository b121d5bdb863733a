"""The unlabelled pool to the next CVAT round: strategies, pool, scoring, score cache, ranking, pre-annotations, round reports, the sampler service's client."""
