//! The metadata quorum on openraft: cluster image state machine, log store, network (filled by the metadata-quorum issue).
