pub fn seeds() -> Vec<Vec<u8>> { vec![] }
