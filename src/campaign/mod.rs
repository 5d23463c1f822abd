pub mod occurrence;
