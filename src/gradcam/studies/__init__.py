"""The paper's studies as reproducible functions: dataset bias, adversarial noise, failure modes."""
