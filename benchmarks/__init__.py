"""Performance benchmarks: embedding throughput, /answer latency and ingestion over HTTP."""
