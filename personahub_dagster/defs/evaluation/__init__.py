"""Measuring what was made: contamination checks, diversity bands, the report, and the asset checks
every stage reports."""
