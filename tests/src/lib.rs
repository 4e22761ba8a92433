pub mod bench;
pub mod cloudwatch_double;
pub mod dynamo_calls;
pub mod lambda_watch;
pub mod secrets_manager;
pub mod sim;
pub mod stack;
