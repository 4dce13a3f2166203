"""The discrete student built from a genotype: training and export."""
