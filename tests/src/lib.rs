pub mod cloudwatch_double;
pub mod dynamo_calls;
pub mod stack;
pub mod sim;
