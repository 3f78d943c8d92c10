import Foundation
import Testing

@testable import WSurgery

/// Recipes are passes in the library: they run from Swift code, and their errors come from the same
/// option specifications the command line uses.
@Suite("Recipes in the library")
struct RecipeTests {
    @Test("a recipe runs from Swift code without the command line")
    func recipeRunsFromSwift() throws {
        let recipe = try Recipe.parse("passes:\n  - collapse-channels: {mode: sum}\n  - replace-head: {classes: 5, seed: 1}\n", path: "r.yaml")
        let passes = try recipe.passes(output: "out.h5")
        #expect(passes.map(\.name) == ["collapse-channels", "replace-head"])
        let output = TestSupport.temporaryDirectory() + "/gray5.h5"
        let result = try Pipeline.run(passes, input: TestSupport.fixture("keras_cnn.h5"), output: output)
        #expect(result.reports.map(\.pass) == ["collapse-channels", "replace-head"])
        let graph = try Checkpoint.read(output)
        #expect(graph.layer(named: "conv1")?.tensors.first?.shape == [3, 3, 1, 8])
        #expect(graph.layer(named: "predictions")?.tensors.first?.shape.last == 5)
        #expect(graph.provenance?.entries.last?.passes.map(\.name) == ["collapse-channels", "replace-head"])
    }

    /// The recipe error for `text` (one step at line 2).
    func failure(_ step: String) -> WSurgeryError? {
        do {
            _ = try Recipe.parse("passes:\n  - \(step)\n", path: "r.yaml").passes(output: nil)
            return nil
        } catch {
            return error as? WSurgeryError
        }
    }

    @Test("recipe errors name the line and key and list the allowed values")
    func errorsListAllowedValues() {
        #expect(
            failure("collapse-channels: {mode: gray}")
                == .invalidRecipe(location: "r.yaml:2", key: "mode", reason: "'gray': expected sum, mean or luma"))
        #expect(
            failure("set-input-shape: {size: 64, dense-policy: maybe}")
                == .invalidRecipe(location: "r.yaml:2", key: "dense-policy", reason: "'maybe': expected reinit, resample or error"))
        #expect(failure("convert: {layout: jax}") == .invalidRecipe(location: "r.yaml:2", key: "layout", reason: "'jax': expected torch or keras"))
        #expect(
            failure("replace-head: {classes: five}") == .invalidRecipe(location: "r.yaml:2", key: "classes", reason: "'five' is not a whole number"))
        #expect(failure("replace-head: {seed: 1}") == .invalidRecipe(location: "r.yaml:2", key: "classes", reason: "is required"))
        #expect(failure("replace-head: {classes: 0}") == .invalidRecipe(location: "r.yaml:2", key: "classes", reason: "must be at least 1 (got 0)"))
        #expect(
            failure("replace-head: {classes: 3, keep-classes: '1,2,3,4'}")
                == .invalidRecipe(location: "r.yaml:2", key: "keep-classes", reason: "keeps 4 classes but 'classes' is 3"))
        #expect(
            failure("drop-layer: {top: yes please}")
                == .invalidRecipe(location: "r.yaml:2", key: "top", reason: "a flag: expected true or false, got a value 'yes please'"))
    }

    @Test("the command-line spelling of options is the front end's choice")
    func optionSpelling() {
        let error = WSurgeryError.invalidOption(option: "keep-classes", reason: "keeps 4 classes but \(option("classes")) is 3")
        #expect(error.message(spelling: { "--" + $0 }) == "--keep-classes: keeps 4 classes but --classes is 3")
        #expect(error.message(spelling: { "'\($0)'" }) == "'keep-classes': keeps 4 classes but 'classes' is 3")
        #expect(WSurgeryError.outputExists(path: "o.h5").message(spelling: { "--" + $0 }) == "o.h5: already exists (use --force to replace it)")
    }
}
