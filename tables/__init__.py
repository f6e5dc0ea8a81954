"""State and storage: Faust tables (windowed statistics) and ClickHouse DDL."""
