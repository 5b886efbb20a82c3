//! The broker library: gRPC services, replica manager, replication, groups (filled by later issues).
