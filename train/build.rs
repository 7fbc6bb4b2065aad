//! Embed an rpath to the libtorch inside the project venv's torch wheel, so `facegate` runs
//! without LD_LIBRARY_PATH. torch-sys finds the same libtorch through LIBTORCH_USE_PYTORCH=1.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let dir = if let Ok(l) = std::env::var("LIBTORCH") {
        Some(format!("{l}/lib"))
    } else {
        Command::new("python")
            .args(["-c", "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(dir) = dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
