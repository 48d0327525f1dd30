// The bindings are generated from the compiled contract at build time: rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../../contracts/out/Subnet.json");
}
