/// Character classes of the pre-tokenizer regexes, as Oniguruma (used by `tokenizers`) defines them:
/// `\p{L}` = general category L*, `\p{N}` = N*, `\s` = the Unicode White_Space property.
/// A table for the BMP is computed once; other planes are looked up directly.
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4

    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for v in 0..<0x10000 {
            if let s = Unicode.Scalar(UInt32(v)) { t[v] = compute(s) }
        }
        return t
    }()

    static func compute(_ s: Unicode.Scalar) -> UInt8 {
        let p = s.properties
        var f: UInt8 = 0
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f |= letter
        case .decimalNumber, .letterNumber, .otherNumber: f |= number
        default: break
        }
        if p.isWhitespace { f |= space }
        return f
    }

    @inline(__always) static func of(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return bmp[Int(v)] }
        guard let s = Unicode.Scalar(v) else { return 0 }
        return compute(s)
    }
}

/// GPT-2's byte ↔ unicode map used by the ByteLevel pre-tokenizer and decoder.
enum ByteLevelMap {
    static let byteToChar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var isPrintable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { isPrintable[b] = true }
        for b in 0xA1...0xAC { isPrintable[b] = true }
        for b in 0xAE...0xFF { isPrintable[b] = true }
        var n: UInt32 = 0
        for b in 0..<256 {
            if isPrintable[b] { table[b] = UInt32(b) } else { table[b] = 256 + n; n += 1 }
        }
        return table
    }()

    /// char → byte, -1 when the char is not one of the 256 byte chars.
    static let charToByte: [Int16] = {
        var t = [Int16](repeating: -1, count: 512)
        for (b, c) in byteToChar.enumerated() { t[Int(c)] = Int16(b) }
        return t
    }()

    @inline(__always) static func byte(of c: UInt32) -> Int16 { c < 512 ? charToByte[Int(c)] : -1 }
}
