pub mod bench;
pub mod cloudwatch_double;
pub mod dynamo_calls;
pub mod lambda_watch;
pub mod log_capture;
pub mod sim;
pub mod stack;
