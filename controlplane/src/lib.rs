//! weft's control plane: watches filter definitions and streams them to proxies.
//!
//! Not built yet: the proxy currently loads its filters from its own config file. The
//! distribution protocol, the local-directory source and the Kubernetes controller land here.
