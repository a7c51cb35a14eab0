//! placeholder while the actors are written
/// AMQP types that the layers above use to build messages (re-exported from lapin).
pub mod amqp {
    pub use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
    pub use lapin::BasicProperties;
}
