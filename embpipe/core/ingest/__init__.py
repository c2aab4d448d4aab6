"""Ingest: reading a documents folder (text extraction, rejections) and cutting documents into chunks."""
