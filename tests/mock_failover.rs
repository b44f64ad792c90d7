//! Fault injection on librdkafka's mock cluster, whose group coordinator expires a dead
//! member's session as Apache Kafka does:
//! * the control owner of two instances is killed with `kill -9` mid-stream: its successor
//!   takes over the event partitions and the control partition, and results the dead owner
//!   wrote but did not commit are not emitted again;
//! * a single instance is killed with `kill -9` mid-stream and restarted (20,000
//!   events: the mock keeps at most 5 MB per partition).

mod helpers;

use helpers::kafka::TestEnv;
use helpers::scenarios::{
    kill_9_mid_stream_then_restart, two_instances_owner_stopped, Durability, Stop,
};
use rdkafka::mocking::MockCluster;

fn env_on(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    name: &str,
    partitions: i32,
) -> TestEnv {
    TestEnv::on_mock(cluster, name, partitions)
}

#[test]
fn two_instances_owner_killed_mid_stream() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    two_instances_owner_stopped(&env_on(&cluster, "mockpair", 4), Stop::Kill);
}

#[test]
fn kill_9_mid_stream_then_restart_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // 20,000 events: the mock keeps at most 5 MB per partition and drops older records.
    kill_9_mid_stream_then_restart(
        &env_on(&cluster, "mockkill9", 3),
        20_000,
        Durability::Durable,
    );
}
