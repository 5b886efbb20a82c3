//! Transactions (docs/transactions.md): the coordinator on `__transaction_state`, the
//! broker-to-broker verification and markers, and the client-facing `Transactions` service.
//! The pure state machine is `silt_core::txn`; a partition's transactions (LSO, aborted spans)
//! are kept with its producers' state (`partition::producers`).

pub(crate) mod coordinator;
pub(crate) mod markers;
pub(crate) mod records;
mod service;

pub(crate) use coordinator::{TxnCoordinator, maintenance_loop};
pub(crate) use markers::TxnBrokerService;
pub(crate) use service::{TransactionsService, check_id};
