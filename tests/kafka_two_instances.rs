//! Two instances in one group share the event partitions; the one emitting control side
//! effects is stopped (SIGTERM) mid-stream, as in a scale-down or a rolling deploy. Nothing is
//! lost, and every control command's result is emitted exactly once, by whichever instance
//! owned the control partition at the time.
//!
//! Why SIGTERM here: tansu 0.6 keeps a member that died without leaving in the group's
//! assignment (reproduced with two plain librdkafka consumers: after the session timeout the
//! survivor is reassigned only its own half), so on this broker a killed member's partitions
//! are never taken over. The same scenario with `kill -9` runs on librdkafka's mock cluster in
//! tests/mock_failover.rs; crash-and-restart on tansu is tests/kafka_kill9.rs.

mod helpers;

use helpers::kafka::TestEnv;
use helpers::scenarios::{two_instances_owner_stopped, Stop};

#[test]
fn two_instances_one_stopped_mid_stream() {
    two_instances_owner_stopped(&TestEnv::new("pair", 4), Stop::Term);
}
