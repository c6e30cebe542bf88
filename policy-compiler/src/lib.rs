//! Policy compiler (see issue 3).
pub mod classifier;
pub mod cli;
pub mod compile;
pub mod ir;
pub mod loader;
pub mod model;
pub mod ranges;
pub mod reference;
pub mod selector;

pub use classifier::{
    Classifier, ClassifierStats, DirVerdict, EndpointId, FlowKey, Scratch, Verdict, L4,
};
pub use compile::{compile, Builder, CompileError, Config, EngineKind};
pub use ir::{Decision, DecisionInfo, Dir};
pub use loader::{load, LoadError, Warning};
pub use model::PolicySet;
