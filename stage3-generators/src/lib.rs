//! Stage 3: generators and the four players.
pub mod generator;
pub mod stack;
mod switch;
