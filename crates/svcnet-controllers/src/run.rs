//! The controllers' edges: watch caches, work queues, and the API writes that apply the pure decisions.
#[derive(Debug)]
pub struct Config;
#[derive(Debug)]
pub struct Controllers;
#[derive(Debug, thiserror::Error)]
pub enum RunError {}
