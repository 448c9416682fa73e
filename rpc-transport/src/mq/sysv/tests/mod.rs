//! Tests on real System V queues.
