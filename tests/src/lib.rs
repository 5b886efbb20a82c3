//! Multi-node integration tests and the cluster harness. Empty until brokers form clusters (the metadata-quorum issue).
