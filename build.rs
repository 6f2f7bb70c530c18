//! Link-time facts about libtorch (DESIGN.md, "libtorch"): bake the torch `lib/` directory into
//! the binary's rpath so it runs without `LD_LIBRARY_PATH`, and keep `libtorch_cuda` linked
//! (`--no-as-needed`) so one build uses a GPU wherever one exists.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-search=native={lib}");
    }
}
