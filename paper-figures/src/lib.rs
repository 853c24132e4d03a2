//! Tables and figures.
