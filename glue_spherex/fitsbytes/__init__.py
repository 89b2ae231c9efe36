"""FITS at the byte level: scanning headers and HDUs, streaming writes, atomic output files.

Used by every reader and writer above it; imports neither glue nor the network.
"""
