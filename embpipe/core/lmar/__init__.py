"""LMAR: teacher-labelled triplets, triplet tuning, sampling-based KNN clustering, validated cluster questions."""
