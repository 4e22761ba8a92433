pub mod aws_recorder;
pub mod bench;
pub mod cloudwatch_double;
pub mod dynamo_calls;
pub mod lambda_watch;
pub mod secrets_double;
pub mod sim;
pub mod stack;
