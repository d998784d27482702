//! `roomcast demo`, the README's main-job command, run as the real binary.

mod run;
