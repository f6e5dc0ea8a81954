"""Stream processors: Faust agents that consume, score, store and dead-letter records."""
