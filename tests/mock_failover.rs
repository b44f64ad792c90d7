//! Fault injection on librdkafka's mock cluster, whose group coordinator expires a dead
//! member's session as Apache Kafka does: the control owner of two instances is killed with
//! `kill -9` mid-stream. Its successor takes over the event partitions and the control
//! partition; results the dead owner wrote but did not commit are not emitted again.

mod helpers;

use helpers::kafka::TestEnv;
use helpers::scenarios::{two_instances_owner_stopped, Stop};
use rdkafka::mocking::MockCluster;

#[test]
fn two_instances_owner_killed_mid_stream() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // The mock cluster has no CreateTopics: create the same topics through its own API.
    let env = TestEnv::names(&cluster.bootstrap_servers(), "mockpair");
    for (topic, partitions) in env.topics(4) {
        cluster
            .create_topic(&topic, partitions, 1)
            .expect("create topic");
    }
    two_instances_owner_stopped(&env, Stop::Kill);
}
