//! Command-line arguments of the bench binaries (`cargo bench --bench NAME -- ARGS`): cargo's
//! own `--bench` dropped, `--name VALUE` flags with defaults, and the positional arguments.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Args {
        Args(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .collect(),
        )
    }

    /// The value after `name`, or `default`.
    pub fn flag(&self, name: &str, default: &str) -> String {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
            .unwrap_or(default.to_string())
    }

    pub fn all(&self) -> &[String] {
        &self.0
    }
}
