"""Record schemas and ML models: data set, training, evaluation, PMML export, repository."""
