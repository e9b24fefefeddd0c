"""The live side in this process: the fan-out of saga transitions to subscribers and the reads that
fill the gaps between them."""
