import TelltaleMetrics

/// Telltale's version, reported by `--version`, `/` and `telltale_build_info`.
public enum TelltaleVersion {
    public static let current = "0.1.0"
}
